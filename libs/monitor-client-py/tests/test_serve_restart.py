"""`cm serve` (embedded chDB store) killed with SIGKILL mid-run and started again on the same
store: the client resends, every neuron of every checkpoint is in the store exactly once."""

import threading
import time

import concept_monitor as cm
from conftest import Proc, wait_serving
from training import LAYERS, SmallCnn, train
from test_watch_e2e import expect_every_neuron_once


def test_cm_serve_killed_and_restarted_mid_run_loses_nothing(serve, bundle, workdir):
    s = serve("restart")
    model = SmallCnn()
    w = cm.watch(model, layers=[n for n, _ in LAYERS], probe=bundle.dir, target=s.target, run_id="py-serve-restart",
                 every=1, policy="wait", reconnect_max_s=0.5)
    restarted = []

    def restart():
        s.proc = Proc("serve-restart-2", s.proc.p.args, s.env, workdir)
        wait_serving(s.target, s.proc)
        restarted.append(time.monotonic())

    threads = []

    def on_step(step):
        if step == 2:
            s.proc.kill()
        if step == 5:
            threads.append(threading.Thread(target=restart))
            threads[-1].start()

    train(model, w, cm.load_bundle(bundle.dir).images, steps=8, on_step=on_step)
    trained_at = time.monotonic()
    for t in threads:
        t.join()
    assert restarted and trained_at < restarted[0], "training went on while the server was down"
    stats = w.close(timeout_s=120)
    c = stats.client
    assert c.acknowledged_checkpoints == 8 and c.dropped_checkpoints == 0 and c.errors == [], c.as_dict()
    assert c.reconnects >= 1
    s.stop()
    expect_every_neuron_once(s.query, "py-serve-restart", list(range(8)), exact_raw=False)
