"""The ``kie-queue`` command line: ``demo``, ``submit``, ``status``, ``sim``, ``resume``.

Configuration comes from the environment (see README); each subcommand prints a clear one-line
error and exits non-zero on bad configuration or input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..errors import ConfigError, KieQueueError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kie-queue", description="Distributed Celery job queue for kie.ai.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run simulator, webhook, worker and beat, and push a batch of jobs end to end")
    demo.add_argument("--jobs", type=int, default=20, help="how many jobs to send (default 20)")
    demo.add_argument("--concurrency", type=int, default=4, help="worker processes (default 4)")
    demo.add_argument("--workdir", default=".kie-demo", help="logs and state of the demo's processes")
    demo.add_argument("--fail-rate", type=float, default=0.0, help="share of simulated jobs that fail (default 0)")
    demo.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the batch (default 180)")
    demo.add_argument("--storage", metavar="URL",
                      help="where results go: a folder, file:///abs/path or s3://bucket/prefix "
                           "(default: KIE_STORAGE_URL, else ./kie-output)")

    submit = sub.add_parser("submit", help="enqueue one generation (generate | download)")
    submit.add_argument("prompt")
    submit.add_argument("--model", default="google/nano-banana")
    submit.add_argument("--image-size")
    submit.add_argument("--output-format")
    submit.add_argument("--job-id")
    submit.add_argument("--timeout", type=float)
    submit.add_argument("--no-download", action="store_true", help="do not chain kie.download")
    submit.add_argument("--wait", action="store_true", help="show progress and print the result")

    status = sub.add_parser("status", help="show a job's record (by job id, or by kie.ai taskId)")
    status.add_argument("job_id")

    sim = sub.add_parser("sim", help="run the kie.ai simulator (arguments are passed to python -m kiesim)")
    sim.add_argument("args", nargs=argparse.REMAINDER)

    sub.add_parser("resume", help="lift a 402 (insufficient credits) or low-credit pause on submissions, on every account")

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo
            return run_demo(jobs=args.jobs, concurrency=args.concurrency, workdir=args.workdir,
                            fail_rate=args.fail_rate, timeout=args.timeout, storage=args.storage)
        if args.command == "submit":
            return _submit(args)
        if args.command == "status":
            return _status(args.job_id)
        if args.command == "sim":
            os.execv(sys.executable, [sys.executable, "-m", "kiesim", *args.args])
        if args.command == "resume":
            from ..ops.actions import resume
            from ..runtime import runtime
            print(f"submissions resumed; {resume(runtime())['woken']} waiting jobs woken")
            return 0
    except ConfigError as exc:
        print(f"kie-queue: configuration error: {exc.message}", file=sys.stderr)
        return 2
    except KieQueueError as exc:
        print(f"kie-queue: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _submit(args) -> int:
    from ..tasks import download, generate

    inp = {"prompt": args.prompt}
    if args.image_size:
        inp["image_size"] = args.image_size
    if args.output_format:
        inp["output_format"] = args.output_format
    # validate here too, so a typo is reported before anything is enqueued
    from ..kie.schemas import validate_input
    validate_input(args.model, inp)
    sig = generate.s(input=inp, model=args.model, job_id=args.job_id, timeout=args.timeout)
    result = (sig if args.no_download else sig | download.s()).apply_async()
    job_id = args.job_id or (result.parent.id if result.parent is not None else result.id)
    print(f"enqueued job {job_id} (celery task {result.id})")
    if not args.wait:
        return 0
    from ..runtime import runtime
    store = runtime().store
    last = None
    while not result.ready():
        job = store.get(job_id) or {}
        line = f"  job {job_id}: {job.get('state', 'queued')}"
        if line != last:
            print(line, flush=True)
            last = line
        time.sleep(0.5)
    try:
        print(json.dumps(result.get(propagate=True), indent=2))
        return 0
    except KieQueueError as exc:
        print(f"kie-queue: job {job_id} failed: {exc.message}", file=sys.stderr)
        return 1


def _status(job_id: str) -> int:
    from ..ops.queries import find_job
    from ..runtime import runtime

    view = find_job(runtime(), job_id)
    if view is None:
        print(f"kie-queue: no job {job_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(view.to_json(), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
