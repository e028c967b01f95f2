import base64
import pickle


def load_session(cookie):
    """Restore the session from the browser's cookie."""
    raw = base64.b64decode(cookie)
    return pickle.loads(raw)
