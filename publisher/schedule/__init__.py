"""Time: the pure rules that say when each scheduled post and sequence step reaches a reader,
and the agenda that applies them to the store's readers."""
