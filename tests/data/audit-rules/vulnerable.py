import hashlib
import os
import pickle
import random
import subprocess

import requests
import yaml
from flask import Markup, render_template_string, send_file


def find_user(cursor, name):
    cursor.execute("SELECT * FROM users WHERE name = '%s'" % name)  # expect: injection
    query = f"DELETE FROM sessions WHERE user = '{name}'"  # expect: injection
    cursor.execute(query)
    cursor.execute("UPDATE users SET seen = 1 WHERE name = '{}'".format(name))  # expect: injection
    cursor.execute("SELECT id FROM users WHERE name = '" + name + "'")  # expect: injection


def run(cmd, host):
    os.system("ping -c 1 " + host)  # expect: command-injection
    os.popen(f"ls {cmd}")  # expect: command-injection
    subprocess.run(cmd, shell=True)  # expect: command-injection
    subprocess.check_output("tar xf " + cmd, shell=True)  # expect: command-injection


def read(name):
    return open("/srv/files/" + name).read()  # expect: path-traversal


def download(name):
    return send_file(os.path.join("/srv/files", name))  # expect: path-traversal


def load(blob, text):
    obj = pickle.loads(blob)  # expect: unsafe-deserialization
    conf = yaml.load(text)  # expect: unsafe-deserialization
    return obj, conf


def fetch(url):
    return requests.get(url)  # expect: ssrf


def page(name):
    return render_template_string("<p>Hello " + name + "</p>")  # expect: xss


def greet(name):
    return Markup(f"<b>{name}</b>")  # expect: xss


def digest(password):
    return hashlib.md5(password.encode()).hexdigest()  # expect: weak-crypto


def new_token():
    reset_token = random.randint(100000, 999999)  # expect: weak-crypto
    return reset_token


def login(response, sid):
    response.set_cookie("session", sid)  # expect: insecure-cookie


def read_report(name):
    report_path = "/srv/reports/" + name
    with open(report_path) as f:  # expect: path-traversal
        return f.read()
