"""Tests of publisher.content: posts, front matter, references, documents, sequences."""
