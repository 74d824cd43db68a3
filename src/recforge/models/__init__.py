"""Models by task family; ``registry`` maps every model's class name to its class."""
