"""The author's files read and checked: documents with front matter, posts, the exercise
catalogue and goals, sequences and their `when:` grammar, media paths, and the references
between them."""
