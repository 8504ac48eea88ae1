"""Story mode ('exquisite corpse'): the service that turns a member's line into the machine's answer."""
