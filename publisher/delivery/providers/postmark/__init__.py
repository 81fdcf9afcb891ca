"""Postmark: the batch API's sending and webhooks, and the JSON message it is given."""
