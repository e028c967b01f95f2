import hashlib

from app.db import connect


def hash_password(password):
    return hashlib.md5(password.encode()).hexdigest()


def delete_account(request, user_id):
    conn = connect()
    conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
    conn.commit()
    return {"deleted": user_id}
