"""lamrunner as an AWS Lambda durable function (the extra `lamrunner[aws]`).

Point the function's handler at `lamrunner.aws.durable_handler`; `lamrunner package --target
aws` builds the zip and the SAM template. The durable execution service does the waiting: each
handler call is a checkpointed step and each step's requests one `wait_for_condition`, so a
poll that waits for hours holds no running function. See docs/deploy.md.
"""

from lamrunner.aws.handler import durable_handler

__all__ = ["durable_handler"]
