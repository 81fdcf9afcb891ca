"""The author's files read and checked: documents with front matter, posts, the exercise
catalogue and goals, sequences and their `when:` grammar, media paths, the grammar Markdown
gains in a post (`::: only`, `[[slug]]`, merge fields) and the references between them."""
