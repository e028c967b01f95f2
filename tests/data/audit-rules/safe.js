const { execFile } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve("/srv/files");

function findUser(db, name) {
  return db.query("SELECT * FROM users WHERE name = ?", [name]);
}

function removeSessions(db, user) {
  return db.query("DELETE FROM sessions WHERE user = $1", [user]);
}

function ping(host) {
  execFile("ping", ["-c", "1", host]);
}

function read(req) {
  const file = path.resolve(ROOT, req.query.file);
  if (!file.startsWith(ROOT + path.sep)) {
    throw new Error("outside the root");
  }
  return fs.readFileSync(file);
}

function load(req) {
  return JSON.parse(req.body.state);
}

async function proxy() {
  return fetch("https://api.example.com/items");
}

function show(el, name) {
  el.textContent = name;
  el.innerHTML = "<b>hello</b>";
  const label = `user ${name}`;
  return label;
}

function digest(password, salt) {
  return crypto.createHash("sha256").update(salt + password).digest("hex");
}

function newToken() {
  const resetToken = crypto.randomBytes(16).toString("hex");
  return resetToken;
}

function login(res, sid) {
  res.cookie("session", sid, { secure: true, httpOnly: true, sameSite: "lax" });
}
