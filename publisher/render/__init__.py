"""A resolved post made into what readers see: Markdown into blocks, layouts into one MJML
edition per goal, the checks and the MJML linter over them, and the web archive with its feeds."""
