"""Settings for the Tidewater inventory service.

Values here are defaults; each can be overridden by an environment variable
of the same name prefixed with TIDEWATER_.
"""

# Port the HTTP server listens on.
LISTEN_PORT = 8412

# Name shown on the status page for this release.
RELEASE_CODENAME = "copper-heron"

# Stock adjustments above this many units need a second approver.
MAX_ADJUSTMENT_UNITS = 10_000

# How long a reservation holds stock before it is released, in minutes.
RESERVATION_TIMEOUT_MINUTES = 30

DATABASE_PATH = "/var/lib/tidewater/inventory.sqlite3"
