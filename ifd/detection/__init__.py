"""Engine-independent detection math for IFD v1 and v3; the strategies call these modules.

Entry points (one call per trade, in ts order)::

    V1Detector(V1Params.from_dict(profile["detector"]), instruments, baselines=None).on_trade(trade)
    V3Detector(V3Params.from_dict(profile["detector"]), instruments, baselines=None).on_trade(trade)
    V3Detector.quality()

Modules:

* ``types``       shared values (InstrumentInfo, TradeEvent, Detection, BaselineStats, sides)
* ``initiation``  aggressor side: feed vs book rule, agreement rate
* ``rolling``     bucketed trailing-window sums (O(1) amortized)
* ``premium``     premium notional, match events (one aggressive order), bursts, the $3M flag
* ``volume``      v1 volume spikes: rolling volume vs baseline, tiers 10x / 30x / 50x
* ``pressure``    v3 per-strike windows: buy/sell volume, ratio, net premium, velocity,
                  quiet-period intraday baseline
* ``sweeps``      levels / strikes swept in one go, urgency
* ``straddles``   market-making filters: straddle coordination, vol crush, cross-strike timing
* ``confidence``  v1 and v3 confidence
* ``params``      strict TOML table -> parameter dataclass
* ``v1``, ``v3``  the detectors
* ``tuning``      dev script: generate, run, score, search (``python -m ifd.detection.tuning``)
"""
