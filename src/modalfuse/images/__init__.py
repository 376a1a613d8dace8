"""Image sources shared by ingest, the query layer and evaluation: loading a local path under the
allowed roots, an http(s) URL or an inline image (`sources`), and the registry of allowed roots
(`roots`)."""
