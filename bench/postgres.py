"""A PostgreSQL server for the benchmarks, with the default durability a coach's server has
(fsync on, synchronous_commit on, full-page writes on), unlike the tests' throwaway one.

Run by hand: `python bench/postgres.py [--port 55432] [--databases bench ...]`. It prints one
URL per database, then serves until Ctrl-C (or SIGTERM), when the cluster is removed.
`pg_stat_statements` is loaded, so a benchmark's statements can be read afterwards:

    SELECT calls, total_exec_time, query FROM pg_stat_statements ORDER BY 2 DESC;
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _sample import arguments  # noqa: E402

from tests.helpers import postgres_server  # noqa: E402

# PostgreSQL's own defaults for durability; only room for connections and the statistics.
DURABLE = {"max_connections": "200", "shared_preload_libraries": "pg_stat_statements",
           "pg_stat_statements.track": "all"}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--port", type=int, default=55432, help="port on 127.0.0.1")
    parser.add_argument("--databases", nargs="+", default=["bench"], metavar="NAME",
                        help="databases to create (default: bench)")
    args = parser.parse_args()
    bin_dir = postgres_server.find_bin_dir()
    if bin_dir is None:
        raise SystemExit("bench/postgres.py: no initdb found; install PostgreSQL "
                         "(apt-get install postgresql)")
    postgres_server.SETTINGS = DURABLE
    server = postgres_server.PostgresServer(bin_dir, port=args.port)
    server.start()
    try:
        for name in args.databases:
            url = server.create_database(name)
            with postgres_server.psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            print(url, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
