"""MkDocs hook: the configuration reference page, generated from the schemas on every build (never a file
in the repository): `reference/configuration.md` is `actlab.config.reference.render_reference()`."""

from mkdocs.structure.files import File, Files

REFERENCE = "reference/configuration.md"


def on_files(files: Files, config) -> Files:
    from actlab.config.reference import render_reference

    files.append(File.generated(config, REFERENCE, content=render_reference()))
    return files
