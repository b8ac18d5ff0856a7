"""Feed and signal monitoring: the data-quality and latency monitors (engine-free figures in
small modules, NautilusTrader actors around them). Import from the modules themselves."""
