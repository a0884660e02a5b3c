"""The replay kernels give the same results as plain Python (NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

from nojit import both_call


def workload() -> dict:
    """Exact and policy replay of a small churn trace and of the synthetic trace of test_replay."""
    import hashlib

    import test_replay as t
    from memdesc.mm.machine import Machine
    from memdesc.sim.churn import Churn
    from memdesc.sim.replay import replay
    from memdesc.sim.replay_io import event_log_frame

    def digest(m) -> str:
        h = hashlib.blake2b(digest_size=8)
        names = ("memdesc", "desc", "owner", "pb", "vm") if m.design.name == "vmem" else (
            "nr_free", "owner", "pb", m.design.memmap_field, "heads")
        for name in names:
            if hasattr(m.state, name):  # radix keeps its list heads in XArrays, not a heads array
                h.update(getattr(m.state, name).tobytes())
        return h.hexdigest()

    src = Machine.create("64M", cpus=2, evlog=50_000)
    Churn(src, orders="mix", gfp="mix", occupancy=0.3, seed=4).run(150)
    churn = event_log_frame(src)
    from memdesc._numba import JIT_DISABLED

    out: dict = {"jit_disabled": JIT_DISABLED, "source": digest(src)}
    for name, df in (("churn", churn), ("synthetic", t.frame(t.exact_rows())),
                     ("synthetic_policy", t.frame(t.policy_rows()))):
        for mode in ("exact", "policy"):
            m = Machine.create("64M", cpus=2, evlog=(1 << 14) if mode == "policy" else 0)
            r = replay(df, mode=mode, machine=m, every=7, typed=False)
            out[f"{name}/{mode}"] = {
                "check": r.check, "digest": digest(m), "inconsistencies": r.inconsistencies, "notes": r.notes,
                "states": r.states, "policy": r.policy, "model_events": r.model_events,
                "samples": r.samples.to_dicts(), "buddyinfo": m.buddyinfo().to_dict(),
            }
    # exact replay on vmem (its exact-placement primitives, memdesc.mm.page_alloc.vmem_exact)
    for name, df in (("churn", churn), ("synthetic", t.frame(t.exact_rows()))):
        m = Machine.create("64M", cpus=2, design="vmem")
        r = replay(df, mode="exact", machine=m, typed=False)
        out[f"{name}/exact/vmem"] = {"check": r.check, "digest": digest(m), "inconsistencies": r.inconsistencies,
                                     "notes": r.notes, "states": r.states, "design": m.design.design_stats(),
                                     "buddyinfo": m.buddyinfo().to_dict()}
    # typed replay (descriptors from the slab, on the design): the typed figures and the end state
    for design in ("radix", "vmem"):
        for mode in ("exact", "policy"):
            m = Machine.create("64M", cpus=2, design=design)
            r = replay(churn, mode=mode, machine=m, typed=True)
            ty = dict(r.typed)
            out[f"churn/{mode}/{design}/typed"] = {"check": r.check, "typed": ty, "digest": digest(m),
                                                   "buddyinfo": m.buddyinfo().to_dict()}
    return out


def test_plain_python_kernels_agree_with_numba():
    nojit, jit = both_call("test_replay_nojit", "workload", timeout=900)
    assert nojit.pop("jit_disabled") is True and jit.pop("jit_disabled") is False
    assert nojit == jit
    assert jit["churn/exact"]["check"] == "ok" and jit["churn/exact"]["inconsistencies"] == {}
    for name in ("churn", "synthetic"):
        v, lin = jit[f"{name}/exact/vmem"], jit[f"{name}/exact"]
        assert v["check"] == "ok" and v["design"]["free_path_allocations"] == 0
        # the same events meet the same states on vmem as on linux, but for the events that hit
        # vmem's descriptor pages (the churn ran on linux, which used those pfns)
        for ev, row in lin["states"].items():
            own = {k: n for k, n in v["states"][ev].items() if "design's own" in k}
            assert sum(v["states"][ev].values()) == sum(row.values())
            assert all(v["states"][ev].get(k, 0) <= n for k, n in row.items())
            assert sum(row.values()) - sum(v["states"][ev].get(k, 0) for k in row) == sum(own.values())
    assert jit["synthetic/exact/vmem"]["states"] == jit["synthetic/exact"]["states"]
    for design in ("radix", "vmem"):
        for mode in ("exact", "policy"):
            ty = jit[f"churn/{mode}/{design}/typed"]
            assert ty["check"] == "ok" and ty["typed"]["two_part_allocations"] > 0
    # the churn trace replayed exactly reproduces the machine that produced it
    assert jit["churn/exact"]["digest"] == jit["churn/policy"]["digest"] == jit["source"]
