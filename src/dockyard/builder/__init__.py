"""The Dockerfile builder: parsing, word expansion, .dockerignore, the build context and cache."""
