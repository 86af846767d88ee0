"""`PodAttribution`: which pod holds each accelerator, as labels on its series.

It plays two parts in the agent. As a collector (``kubernetes``, scheduled on its own
``refresh`` interval and timeout like any other, in its own worker) it asks the kubelet's
PodResources API and caches the answer; a kubelet that is down costs one log line per
episode and a count in ``agent.kubelet_errors_total{reason}``, and never holds up another
collector. As the collectors' `DeviceLabels` hook (`device_labels`, which the agent installs
in the NVML and Ascend collectors) it adds ``namespace``, ``pod`` and ``container`` to a held
device's labels where the collector builds them, from the cache, with no I/O, so every
``accelerator`` and ``accelerator_process`` sample of the device is made with them. As the
agent's relabel step it checks each batch's label sets against the answer in force then (a
List may have come in between, as it runs beside the collectors' runs), copies the samples
whose labels that answer changes (and those of a collector without the hook), adds
``accelerator.allocated`` (1 held, 0 free) for every device that reports its
``accelerator.health`` (every GPU, MIG device and NPU chip does, each run), and watches the
devices' processes.

Where the kubelet cannot be asked (no socket, an error), the last answer is dropped (a stale
one would name pods that may be gone) and, unless turned off, the cgroup fallback runs: the
processes the collectors listed on a device (``accelerator_process{pid}``, largest first)
are traced through ``<proc root>/<pid>/cgroup`` to their pod's UID (label ``pod_uid``); the
first process in a pod names the device's pod. That says which pod uses a device, not which
holds it (an allocated device with no process is not seen), so ``allocated`` is not emitted
then. Several pods sharing one device (time-slicing, MPS) are reported as the first of them
in (namespace, pod, container) order: a series has one pod label.

The kubelet is asked every ``refresh_s`` (60 s in the node config), and sooner, at the
collector's next run, when the devices' processes change in a way the cached answer may not
cover: a new process on a device the answer calls free (a pod may have been given it since),
or the last process gone from a held one (its pod may have ended). So a pod that starts or
stops work is labelled within one cycle, and one that only holds or releases an idle device
within ``refresh_s``, while a List (0.5 to 0.8 ms of CPU) runs about once a minute, not
every cycle. Hinted Lists come at most every ``refresh_s / 4``.

The attribution is the agent's first collector, so in ``run_once`` its answer is in before
the devices' batches are relabelled; under ``run`` the batches of the agent's first cycle
may go out before the first answer (they then carry what the fallback finds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from computewatch.collectors._base import placement_labels
from computewatch.collectors.kubernetes._cgroup import PodRef, pod_of_pid
from computewatch.collectors.kubernetes._client import (
    Holding,
    KubeletUnavailable,
    PodResourcesClient,
)
from computewatch.collectors.kubernetes._devices import Key, holding_keys, sample_keys
from computewatch.samples import Sample

__all__ = ["REASONS", "PodAttribution"]

log = logging.getLogger(__name__)

REASONS = ("absent", "unavailable", "timeout", "unimplemented", "error")
"""``agent.kubelet_errors_total{reason}``, each from the first cycle at 0."""

_Labels = tuple[tuple[str, str], ...]
_CACHE_MAX = 4096
"""Label sets (and pids) the caches keep before they start again. A process's series has a
label set of its own (its pid), so under one steady answer the caches would grow with every
process a node ever ran; a node has tens to hundreds of label sets a cycle, so starting again
costs one cycle's look-ups, seldom."""
_SOURCES = ("podresources", "cgroup")
"""``agent.attributed_devices{source}``."""
_DEVICE_MEASUREMENTS = frozenset({"accelerator", "accelerator_process"})
_POD_NAMES = frozenset({"container", "namespace", "pod"})
"""The labels a holder gives; on a device's series they are this module's alone."""


def _with_labels(s: Sample, labels: tuple[tuple[str, str], ...]) -> Sample:
    """``s`` with other (sorted) labels."""
    return Sample(s.measurement, s.field, s.value, labels, s.time)


def _sorted(labels: Mapping[str, str]) -> _Labels:
    return tuple(sorted(labels.items()))


def _without_pods(labels: _Labels) -> _Labels:
    """``labels`` without a holder's pairs (an answer gone since the collector read the
    device gave them); the same tuple when it has none."""
    kept = tuple(p for p in labels if p[0] not in _POD_NAMES)
    return kept if len(kept) < len(labels) else labels


def holders_by_key(holdings: list[Holding]) -> dict[Key, _Labels]:
    """Each device key's holder as sorted labels, one tuple per holder (its pairs are shared
    by every labelled label set of its devices); where several share one, the first in
    order."""
    out: dict[Key, tuple[str, str, str]] = {}
    for h in holdings:
        who = (h.namespace, h.pod, h.container)
        for key in holding_keys(h.resource, h.device_id):
            if key not in out or who < out[key]:
                out[key] = who
    labels: dict[tuple[str, str, str], _Labels] = {}
    for ns, pod, ctr in out.values():
        labels.setdefault((ns, pod, ctr), (("container", ctr), ("namespace", ns), ("pod", pod)))
    return {k: labels[who] for k, who in out.items()}


class PodAttribution:
    """Caches the kubelet's allocations and labels accelerator samples with their pods."""

    name = "kubernetes"

    def __init__(self, labels: Mapping[str, str], client: PodResourcesClient, *,
                 proc_root: Path = Path("/proc"), cgroup_fallback: bool = True,
                 refresh_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``refresh_s``: the longest an answer is used (0: ask at every collector run)."""
        self._place = placement_labels(labels)
        self._refresh_s = refresh_s
        self._clock = clock
        self._asked_at: float | None = None
        self._hinted = False  # the relabel step saw processes the answer may not cover
        self._procs: dict[str, frozenset[str]] = {}  # device -> its pids in its last batch
        self._client = client
        self._proc_root = Path(proc_root)
        self._fallback = cgroup_fallback
        self._lock = threading.Lock()
        self._held: dict[Key, _Labels] | None = None  # None: the kubelet is not heard
        # labels (and pod UID) -> what they become; in `relabel`, a labels tuple's id -> (the
        # tuple, what it becomes)
        self._relabelled: dict = {}
        self._pods: dict[int, PodRef | None] = {}
        self._errors: Counter[str] = Counter({r: 0 for r in REASONS})
        self._up = 0.0
        self._failing = False
        self._attributed: dict[str, str] = {}  # device -> source of its pod labels
        self._own: PodRef | None = None  # the agent's own pod, never a device's holder
        self._stamped = False  # `device_labels` has given a device a holder's labels
        # its own series' labels, made once (`self_samples`)
        self._up_labels = _sorted(self._place)
        self._reason_labels = {r: _sorted({**self._place, "reason": r}) for r in REASONS}
        self._source_labels = {s: _sorted({**self._place, "source": s}) for s in _SOURCES}

    # -- the collector's part: refresh the cache ----------------------------------------------
    def collect(self) -> list[Sample]:
        """Ask the kubelet when due; its metrics are in `self_samples`, every cycle."""
        if not self.due():
            return []
        with self._lock:
            self._asked_at, self._hinted = self._clock(), False
        try:
            held = holders_by_key(self._client.list())
        except KubeletUnavailable as exc:
            with self._lock:
                self._errors[exc.reason] += 1
                self._held, self._up = None, 0.0
                self._reset()
            if not self._failing:  # one line per episode
                log.warning("kubelet PodResources unavailable (%s): %s; %s", exc.reason, exc,
                            "labelling devices from their processes' cgroups"
                            if self._fallback else "devices go without pod labels")
                self._failing = True
            return []
        with self._lock:
            if held != self._held:  # the same answer keeps the relabel cache warm
                self._relabelled = {}
            self._held, self._up = held, 1.0
            self._pods = {}
        if self._failing:
            log.warning("kubelet PodResources answers again at %s", self._client.socket)
            self._failing = False
        return []

    def due(self) -> bool:
        """Whether a List is due: the agent runs the collector only then (`collect` itself
        asks too), so the cycles between Lists wake no worker thread."""
        with self._lock:
            if self._asked_at is None:
                return True
            since = self._clock() - self._asked_at
            return since >= self._refresh_s or (self._hinted and since >= self._refresh_s / 4)

    def _watch(self, procs: dict[str, set[str]], held: set[str], present: set[str]) -> None:
        """Hint an early List when processes start on a device the answer calls free, or
        the last one leaves a held device (see the module's docstring). ``present``: the
        devices this batch reports (each collector's batch is relabelled on its own)."""
        before = self._procs  # a device first seen now is the baseline: no hint
        started = any(device in before and pids - before[device]
                      for device, pids in procs.items() if device not in held)
        ended = any(before.get(device) and device not in procs for device in held)
        for device in present | procs.keys():
            before[device] = frozenset(procs.get(device, ()))
        if started or ended:
            with self._lock:
                self._hinted = True

    def _reset(self) -> None:
        self._relabelled = {}
        self._pods = {}

    def self_samples(self, now: datetime) -> list[Sample]:
        """Its own series, every cycle (their labels made once, in ``__init__``)."""
        with self._lock:
            out = [Sample("agent", "kubelet_up", self._up, self._up_labels, now)]
            for r, n in self._errors.items():
                labels = self._reason_labels.get(r)
                if labels is None:  # a reason outside REASONS
                    labels = self._reason_labels[r] = _sorted({**self._place, "reason": r})
                out.append(Sample("agent", "kubelet_errors_total", float(n), labels, now))
            by_source = Counter(self._attributed.values())
        for source, labels in self._source_labels.items():
            out.append(Sample("agent", "attributed_devices", float(by_source[source]),
                              labels, now))
        return out

    def close(self) -> None:
        self._client.close()

    # -- the collectors' hook: a held device's samples are made with its pod's labels --------
    def device_labels(self, labels: dict[str, str]) -> dict[str, str]:
        """``labels`` with the holder's ``namespace``, ``pod`` and ``container`` from the
        cached answer (a new dict), or ``labels`` itself when the device is not held or the
        kubelet is not heard: the agent's `DeviceLabels` hook. Called from the collectors'
        workers, so no lock: it reads the answer once (`collect` replaces it whole). Without
        it the relabel step would copy every sample of a held device (566 a cycle on 8 GPUs
        and 8 NPUs) to give it three labels."""
        held = self._held
        if not held:
            return labels
        who = self._holder(held, labels)
        if not who:
            return labels
        self._stamped = True
        out = dict(labels)
        out.update(who)
        return out

    # -- the relabel step: no I/O but the fallback's /proc reads ------------------------------
    def relabel(self, samples: list[Sample]) -> list[Sample]:
        """``samples`` with pod labels on every held device's series (and none on a free
        one's), plus ``allocated``.

        A sample made through `device_labels` with the answer still in force is kept as it
        is; one whose labels that answer changes (or one of a collector without the hook) is
        copied with the right labels, in place: the agent hands over its own list of a run's
        batch, and each copy takes its original's slot there, which frees the original at
        once. A cycle so holds no more live objects than without attribution; a new list
        beside the old one held ~570 more each cycle and ran the cyclic garbage collector
        about once a cycle, not every 8th (bench/bench_agent.py says what that cost)."""
        with self._lock:
            held, cache = self._held, self._relabelled
        if held is None:
            if self._fallback:
                return self._relabel_from_cgroups(samples, cache)
            if self._stamped:  # a batch read while the last answer was in force
                for i, s in enumerate(samples):
                    if s.measurement in _DEVICE_MEASUREMENTS:
                        samples[i] = self._unheld(s, cache)
                self._bound(cache)
            return samples
        health: list[tuple[Sample, tuple]] = []  # one per device: where allocated comes from
        procs: dict[str, set[str]] = {}  # device -> pids, for `_watch`
        seen_labels: object = None  # a device's samples share one labels tuple: hash it once
        hit: tuple = ()
        new: _Labels | None = None
        # Every sample of the run passes here (~570 a cycle on 8 GPUs and 8 NPUs): each
        # attribute read once, and what a label set resolves to (its pid too) cached with it.
        for i, s in enumerate(samples):
            measurement = s.measurement
            if measurement not in _DEVICE_MEASUREMENTS:
                continue
            labels = s.labels
            if labels is not seen_labels:
                # Keyed by the tuple's id, kept with the tuple (so the id is not reused while
                # cached): the collectors keep a series' tuple across runs (`LabelSets`), and
                # hashing a 16-pair tuple each time cost more than the rest of the loop.
                seen_labels = labels
                entry = cache.get(id(labels))
                if entry is None or entry[0] is not labels:
                    entry = cache[id(labels)] = (labels, self._resolve(held, labels))
                hit = entry[1]
                new = hit[3]
            if new is not None:
                samples[i] = s = _with_labels(s, new)
            if measurement == "accelerator":
                if s.field == "health":
                    health.append((s, hit))
            else:
                procs.setdefault(hit[0], set()).add(hit[4])
        parents_held = {parent for _, (_, on, parent, _, _) in health if on and parent}
        seen: dict[str, str] = {}
        for s, (device, on, _, _, _) in health:
            seen[device] = "podresources" if on else ""
            samples.append(Sample("accelerator", "allocated",
                                  1.0 if on or device in parents_held else 0.0,
                                  s.labels, s.time))
        self._note(seen)
        self._bound(cache)
        if health:  # a batch of the devices' collector (not one of meters or links)
            self._watch(procs, {device for _, (device, on, _, _, _) in health if on},
                        {device for _, (device, _, _, _, _) in health})
        return samples

    def _resolve(self, held: dict[Key, _Labels],
                 labels: _Labels) -> tuple[str, bool, str, _Labels | None, str]:
        """(device, whether it is held, its parent when held, the labels its samples must
        carry, or None when they carry them already: with its holder's when held, without
        any holder's when free; its ``pid`` label, or ""). The labelled set is made of the
        original pairs and the holder's, not copies."""
        lab = dict(labels)
        device = lab.get("device", "")
        pid = lab.get("pid") or ""
        extra = self._holder(held, lab)
        kept = _without_pods(labels)
        if not extra:
            return device, False, "", None if kept is labels else kept, pid
        new = tuple(sorted((*kept, *extra)))
        return device, True, lab.get("parent", ""), None if new == labels else new, pid

    @staticmethod
    def _unheld(s: Sample, cache: dict) -> Sample:
        """``s`` without a holder's labels (see `_without_pods`)."""
        kept = cache.get(s.labels)
        if kept is None:
            kept = cache[s.labels] = _without_pods(s.labels)
        return s if len(kept) == len(s.labels) else _with_labels(s, kept)

    def _relabel_from_cgroups(self, samples: list[Sample], cache: dict) -> list[Sample]:
        """``samples`` with ``pod_uid`` on the devices a pod's process runs on; in place, as
        `relabel`."""
        owners = self._cgroup_owners(samples)
        seen: dict[str, str] = {}
        for i, s in enumerate(samples):
            if s.measurement not in _DEVICE_MEASUREMENTS:
                continue
            device = s.label("device") or ""
            ref = owners.get(device)
            if ref is None:
                seen.setdefault(device, "")
                if self._stamped:
                    samples[i] = self._unheld(s, cache)
                continue
            seen[device] = "cgroup"
            new = cache.get((s.labels, ref.uid))
            if new is None:
                new = cache[(s.labels, ref.uid)] = tuple(
                    sorted({**dict(_without_pods(s.labels)), "pod_uid": ref.uid}.items()))
            samples[i] = _with_labels(s, new)
        self._note(seen)
        self._bound(cache)
        return samples

    def _bound(self, cache: dict) -> None:
        """Start the relabel cache and the pids' pods again once they pass `_CACHE_MAX`."""
        with self._lock:
            if len(cache) > _CACHE_MAX and self._relabelled is cache:
                self._relabelled = {}
            if len(self._pods) > _CACHE_MAX:
                self._pods = {}

    def _note(self, seen: dict[str, str]) -> None:
        with self._lock:
            for device, source in seen.items():
                if source:
                    self._attributed[device] = source
                else:
                    self._attributed.pop(device, None)

    @staticmethod
    def _holder(held: dict[Key, _Labels], lab: Mapping[str, str]) -> _Labels:
        for key in sample_keys(lab):
            if (who := held.get(key)) is not None:
                return who
        return ()

    def _cgroup_owners(self, samples: list[Sample]) -> dict[str, PodRef]:
        """Each device's pod from its processes (largest first) in this batch.

        A pid that resolves to the agent's own pod is skipped: without hostPID the agent sees
        its own pid namespace, where a device's host pid can name one of the agent's own
        processes, and the agent runs nothing on an accelerator."""
        owners: dict[str, PodRef] = {}
        if self._own is None:
            self._own = pod_of_pid(self._proc_root, "self") or PodRef("")
        for s in samples:
            if s.measurement != "accelerator_process":
                continue
            device, pid = s.label("device"), s.label("pid")
            if not device or not pid or device in owners or not pid.isdigit():
                continue
            n = int(pid)
            if n not in self._pods:
                self._pods[n] = pod_of_pid(self._proc_root, n)
            if (ref := self._pods[n]) is not None and ref.uid != self._own.uid:
                owners[device] = ref
        return owners

