"""The data library: from a source file to the balanced instruction mix.

Nothing here knows about a stage, a pipeline or MLflow; the stages in :mod:`dagllm.stages` call it.

- :mod:`.catalog`, :mod:`.readers`, :mod:`.recipes`, :mod:`.teamdata`: what the sources and tasks
  are (YAML data), how each file format is read, the named mixes, a team's own files.
- :mod:`.download`: one catalog file from a mirror into ``data/raw``, verified.
- :mod:`.canonical`: which files a run reads, and each file through its reader into canonical rows.
- :mod:`.korean`, :mod:`.templating`, :mod:`.records`: Korean particles, the sandboxed Jinja2
  renderer, and canonical rows -> instruction records (and their Alpaca / chat exports).
- :mod:`.gate`: the great-expectations suites at the three points, with quarantine and Data Docs.
- :mod:`.text`, :mod:`.hashing`: normal forms, measures and MinHash/LSH shared by the gate, dedup
  and decontamination.
- :mod:`.overlap`: the decontamination matcher, which training records overlap an evaluation item.
- :mod:`.mixing`: dedup, the seeded mixing policy and the split stratified by task.
- :mod:`.lint`, :mod:`.preview`: the Korean lint of the catalog and what ``dagllm catalog`` shows.
"""
