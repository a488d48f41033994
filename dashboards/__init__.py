"""tokenmeter's Grafana dashboards and recording rules, generated from one PromQL vocabulary.

``python dashboards/generate.py`` (see its docstring) writes ``dashboards/*.json`` and the
recording rules' expressions; nothing here is imported by the proxy.
"""
