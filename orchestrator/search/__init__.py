"""Search over candidate solutions (`--strategy tree`): the tree's read model (tree.py), the selection
policy and the engine that grows it."""
