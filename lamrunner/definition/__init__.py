"""The workflow definition: YAML file → frozen, validated objects, before anything runs.

Pure load-time model: the workflow file, config layers and templates, handler references,
directives and their request objects, retry and poll policies. Everything is checked here once;
the engine never re-validates mid-run.
"""
