import hashlib
import os
import secrets
import subprocess

import requests
import yaml
from flask import Markup, render_template, send_file

ROOT = os.path.realpath("/srv/files")


def find_user(cursor, name):
    cursor.execute("SELECT * FROM users WHERE name = %s", (name,))
    cursor.execute("DELETE FROM sessions WHERE user = ?", (name,))
    label = "user %s" % name
    return label


def run(cmd, host):
    subprocess.run(["ping", "-c", "1", host])
    os.system("uptime")
    subprocess.run("ls -l", shell=True)


def read(name):
    path = os.path.realpath(os.path.join(ROOT, name))
    if not path.startswith(ROOT + os.sep):
        raise ValueError("outside the root")
    return open(path).read()


def load(text):
    return yaml.load(text, Loader=yaml.SafeLoader)


def fetch(item):
    return requests.get("https://api.example.com/items", params={"id": item})


def page(name):
    return render_template("page.html", name=name)


def greet():
    return Markup("<b>hello</b>")


def digest(password, salt):
    return hashlib.sha256(salt + password.encode()).hexdigest()


def new_token():
    reset_token = secrets.token_hex(16)
    return reset_token


def login(response, sid):
    response.set_cookie("session", sid, secure=True, httponly=True, samesite="Lax")
