"""lamrunner on Google Cloud: a Cloud Run function (gen2) whose runs suspend into Cloud Tasks.

`main.py`, as `lamrunner package --target gcp` writes it, is `from lamrunner.gcp import
http_function`; functions-framework serves that function. A run that would wait past its
budget is checkpointed and scheduled to continue, as a Cloud Task carrying its saved state,
when its next poll is due: nothing runs, and nothing is billed, while it waits. See
docs/deploy.md, "Google Cloud Functions".

    function  the HTTP function: parse the request, run, answer
    events    what a request asks for (a start, a continuation) and its checks
    runs      one invocation's share of a run, and what it hands on
    tasks     the one boundary to google-cloud-tasks
    settings  the environment, and the workflow loaded once per container
"""

from lamrunner.gcp.function import http_function

__all__ = ["http_function"]
