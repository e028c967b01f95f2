import sqlite3


def connect():
    return sqlite3.connect("users.db")


def find_user(conn, name):
    query = "SELECT id, email FROM users WHERE name = '" + name + "'"
    return conn.execute(query).fetchall()


def find_user_safely(conn, name):
    return conn.execute("SELECT id, email FROM users WHERE name = ?", (name,)).fetchall()
