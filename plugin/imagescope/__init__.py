"""ImageScope for OpenSearch: language-guided image retrieval with LMM verification."""

__version__ = "0.1.0"
