"""gcloud-tasks-emulator on 127.0.0.1, with Cloud Tasks' task-name de-duplication.

    python tests/gcp_tasks_emulator.py QUEUE [QUEUE...]    # prints "listening on 127.0.0.1:PORT"

The emulator's own queue state, gRPC service and dispatcher are used as they are: it really
sends an HTTP task to its URL once its `schedule_time` has come (its dispatcher looks every
0.1 s), and retries a task whose target answered 4xx/5xx, at once, up to `--max-retries`.
What it lacks is one rule of the real service: a second task with the name of a task that
exists or ran recently is refused with ALREADY_EXISTS (for about an hour, says the client's
reference); the emulator queues it again, and dispatches it twice. This launcher adds that
rule, since lamrunner's continuations rely on it, and binds the gRPC port on 127.0.0.1 (the
emulator's own `start` binds every interface, on a port given in advance).
"""

from __future__ import annotations

import argparse
import sys
import threading
import warnings
from concurrent import futures

with warnings.catch_warnings():  # google-api-core's notice about Python 3.11's end of support
    warnings.filterwarnings("ignore", category=FutureWarning)
    import grpc
    from gcloud_tasks_emulator import server as emulator
    from google.api_core.exceptions import AlreadyExists
    from google.cloud.tasks_v2 import Queue, Task


class DedupQueueState(emulator.QueueState):
    """The emulator's queues, refusing a task name that was ever used, as Cloud Tasks does
    within its de-duplication window (the emulator runs for one test session)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._names: set[str] = set()
        self._names_lock = threading.Lock()

    def create_task(self, queue: str, task: Task) -> Task:
        with self._names_lock:
            if task.name and task.name in self._names:
                raise AlreadyExists(f"Requested entity already exists: {task.name}")
            created = super().create_task(queue, task)
            self._names.add(created.name)
            return created


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queues", nargs="+", help="projects/P/locations/L/queues/Q")
    parser.add_argument("--max-retries", type=int, default=5)
    args = parser.parse_args()
    state = DedupQueueState("127.0.0.1", 9, args.max_retries)  # HTTP tasks carry their URL
    for name in args.queues:
        state.create_queue(name.rsplit("/", 2)[0], Queue(name=name))
    api = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    emulator.add_CloudTasksServicer_to_server(emulator.Greeter(state), api)
    port = api.add_insecure_port("127.0.0.1:0")
    api.start()
    processor = emulator.Processor(state)
    processor.daemon = True
    processor.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin (or is gone)
    finally:
        api.stop(grace=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
