"""The lock that lets a test marked `alone` run with no other worker's test beside it (tests/alone.py)."""

import threading
import time

from tests.alone import machine_share


def hold(folder, exclusive, order, name, release):
    with machine_share(folder, exclusive):
        order.append(name)
        release.wait(10)


def test_an_alone_test_waits_for_running_tests_and_new_ones_wait_for_it(tmp_path):
    order, threads, releases = [], {}, {}
    for name, exclusive in [("running", False), ("alone", True), ("next", False)]:
        releases[name] = threading.Event()
        threads[name] = threading.Thread(target=hold, args=(tmp_path, exclusive, order, name, releases[name]))
        threads[name].start()
        time.sleep(0.3)  # each one is holding or waiting before the next starts
    assert order == ["running"]  # the alone test waits for the running one; the next one waits behind it
    releases["running"].set()
    threads["running"].join(5)
    time.sleep(0.3)
    assert order == ["running", "alone"]
    releases["alone"].set()
    threads["alone"].join(5)
    time.sleep(0.3)
    assert order == ["running", "alone", "next"]
    releases["next"].set()
    threads["next"].join(5)


def test_shared_holders_run_side_by_side_and_one_process_needs_no_lock(tmp_path):
    with machine_share(tmp_path, False), machine_share(tmp_path, False):
        pass
    with machine_share(None, True), machine_share(None, True):
        pass
