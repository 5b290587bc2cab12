"""``twostage serve-ui``: a small web page to browse an export's recommendations.

Pick or type a user to see the two-stage recommendations with predicted ratings next to the
movies the user rated in training; search a title to see similar movies and what people
who liked it also liked. The page only talks to the exported SavedModel, through
``Recommender`` (never the training code), over a JSON API on the same server:

    GET /api/users                  a sample of known user ids
    GET /api/recommend?user=ID&k=N  recommendations and the user's training history
    GET /api/search?q=TEXT          catalog titles containing TEXT
    GET /api/movie?id=ID            the movie, its similar movies and "also liked"
"""

from __future__ import annotations

import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse



from twostage.data.errors import TwostageError
from twostage.serving.clients.recommender import Recommender

log = logging.getLogger("twostage")

PAGE = os.path.join(os.path.dirname(__file__), "static", "index.html")


class BrowseApi:
    """What the page asks for, answered from an exported model.

    Args:
      recommender: the loaded export.
    """

    def __init__(self, recommender: Recommender):
        self.recommender = recommender
        ids, titles = recommender.catalog()
        self.titles = dict(zip(ids.tolist(), titles.tolist()))
        self._lower = [(m, t.lower()) for m, t in self.titles.items()]

    def _movies(self, ids) -> list[dict]:
        return [{"movie_id": m, "title": self.titles.get(m, m)} for m in ids]

    def users(self, limit: int = 200) -> dict:
        """The first ``limit`` known users in natural order (numeric ids by value: 1, 2, ..., 10)."""
        ids = sorted(self.recommender.known_users().tolist(), key=lambda u: (not u.isdecimal(), len(u), u))
        return {"users": ids[:limit], "count": len(ids)}

    def recommend(self, user: str, k: int = 10) -> dict:
        recs = self.recommender.recommend(user, k=k)
        history = self.recommender.training_history([user])[0]
        return {"user_id": user, "known": bool(history), "recommendations": [r.as_dict() for r in recs],
                "history": self._movies(history)}

    def search(self, query: str, limit: int = 20) -> dict:
        query = query.strip().lower()
        if not query:
            return {"query": query, "movies": []}
        hits = [m for m, title in self._lower if query in title][:limit]
        return {"query": query, "movies": self._movies(hits)}

    def movie(self, movie_id: str, k: int = 10) -> dict:
        similar = self.recommender.similar_movies(movie_id, k=k)
        also = self.recommender.also_liked(movie_id, k=k)
        return {"movie_id": movie_id, "title": self.titles[movie_id], "similar": [m.as_dict() for m in similar],
                "also_liked": [m.as_dict() for m in also]}

    def answer(self, path: str, query: dict) -> dict:
        """Routes one API request; raises TwostageError (a 400) for a bad one."""
        one = {name: values[0] for name, values in query.items()}
        k = one.get("k", "10")
        if not (k.isascii() and k.isdigit()) or not 1 <= int(k) <= self.recommender.max_k:
            raise TwostageError(f"k must be a whole number from 1 to {self.recommender.max_k}, got {k!r}")
        if path == "/api/users":
            return self.users()
        if path == "/api/recommend":
            return self.recommend(self._required(one, "user"), int(k))
        if path == "/api/search":
            return self.search(one.get("q", ""))
        if path == "/api/movie":
            movie_id = self._required(one, "id")
            if movie_id not in self.titles:
                raise TwostageError(f"movie {movie_id!r} is not in this model's catalog")
            return self.movie(movie_id, int(k))
        raise KeyError(path)

    @staticmethod
    def _required(one: dict, name: str) -> str:
        value = one.get(name, "").strip()
        if not value:
            raise TwostageError(f"the {name} parameter is missing or empty")
        return value


class _BrowseServer(ThreadingHTTPServer):
    """A thread per request, and a listen backlog that holds a burst of clients (the default
    of 5 made a sixth concurrent client wait for SYN retries, seconds)."""

    request_queue_size = 128
    daemon_threads = True


def make_server(model_path: str, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """The page's HTTP server (port 0: any free port); call serve_forever() on it."""
    api = BrowseApi(Recommender.load(model_path))
    with open(PAGE, "rb") as f:
        page = f.read()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlparse(self.path)
            if url.path in ("/", "/index.html"):
                return self._send(200, page, "text/html; charset=utf-8")
            try:
                payload, code = api.answer(url.path, parse_qs(url.query)), 200
            except KeyError:
                payload, code = {"error": f"no such page: {url.path}"}, 404
            except TwostageError as err:
                payload, code = {"error": str(err)}, 400
            except Exception as err:  # noqa: BLE001  a reply, never a dropped connection
                log.warning("serve-ui: %s?%s failed: %r", url.path, url.query, err)
                payload, code = {"error": f"internal error: {type(err).__name__}"}, 500
            self._send(code, json.dumps(payload).encode("utf-8"), "application/json")

        def _send(self, code: int, body: bytes, kind: str):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            log.debug("serve-ui: " + fmt, *args)

    if not 0 <= port <= 65535:
        raise TwostageError(f"--port must be from 0 to 65535, got {port}")
    try:
        return _BrowseServer((host, port), Handler)
    except (OSError, OverflowError) as err:
        raise TwostageError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def serve(model_path: str, host: str = "127.0.0.1", port: int = 8080):
    """Serves the page until interrupted."""
    server = make_server(model_path, host, port)
    print(f"browse {model_path} at http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def serve_in_background(model_path: str, host: str = "127.0.0.1", port: int = 0):
    """Starts the page's server on a thread; returns (server, base url)."""
    server = make_server(model_path, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"



