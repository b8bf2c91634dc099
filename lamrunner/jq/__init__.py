"""JQ programs (`handler: transform.jq`): the only package that imports the `jq` binding."""
