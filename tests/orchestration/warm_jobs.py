"""Small jobs that the warm launcher's tests run: one reports the process it ran in, one waits."""

import os
import time

import dagster as dg


@dg.op(config_schema={"out": str})
def report_process(context: dg.OpExecutionContext) -> None:
    with open(context.op_config["out"], "w") as out:
        out.write(str(os.getpid()))


@dg.job(executor_def=dg.in_process_executor)
def report_job():
    report_process()


@dg.op
def wait_long() -> None:
    for _ in range(1200):
        time.sleep(0.1)


@dg.job(executor_def=dg.in_process_executor)
def wait_job():
    wait_long()
