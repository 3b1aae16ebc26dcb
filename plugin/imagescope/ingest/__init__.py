"""Getting images in: safe loading, catalog readers, bulk ingest.

images    ``load_image`` (the one place untrusted images are opened) and helpers
fetch     http(s) download guarded against private networks
sources   ``IngestItem`` readers for folders and CSV/JSONL catalogs
runner    ``ingest`` and ``backfill_captions`` (reader -> mapper -> writer)
"""
