"""``ifd report RUN_DIR``: one self-contained HTML page per run folder.

``build.write_report`` reads the run folder (``run_folder``) and the run's catalog
(``market_data``), builds the Plotly figures (``figures``, with ``pressure_grid`` for the
strike heatmap), the tables (``tables``) and NautilusTrader's own tearsheet (``tearsheet``), and
assembles the page (``page``), which embeds plotly.js once and works offline. ``cli`` registers
the command; ``screenshot`` saves a full-page PNG of a report with headless Chromium.
"""
