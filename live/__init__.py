"""Paper and limited-live TradingNodes (issue 4) build on the same strategies and configs."""
