"""A minimal HTTP front for stock queries."""

import json
from http.server import BaseHTTPRequestHandler, HTTPServer

from . import settings
from .stock import StockLevel, total_units

LEVELS = [
    StockLevel("BOLT-M6", "rotterdam", 1200),
    StockLevel("BOLT-M6", "gdansk", 800),
    StockLevel("NUT-M6", "rotterdam", 450),
]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        sku = self.path.strip("/")
        body = json.dumps({"sku": sku, "units": total_units(LEVELS, sku)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())


def main():
    HTTPServer(("127.0.0.1", settings.LISTEN_PORT), Handler).serve_forever()


if __name__ == "__main__":
    main()
