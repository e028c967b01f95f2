const { exec } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const serialize = require("node-serialize");

function findUser(db, name) {
  return db.query("SELECT * FROM users WHERE name = '" + name + "'"); // expect: injection
}

function removeSessions(db, user) {
  return db.query(`DELETE FROM sessions WHERE user = '${user}'`); // expect: injection
}

function ping(host) {
  exec("ping -c 1 " + host); // expect: command-injection
}

function run(code) {
  return eval(code); // expect: injection
}

function read(req, res) {
  res.sendFile(path.join(__dirname, "files", req.params.name)); // expect: path-traversal
  return fs.readFileSync("/srv/files/" + req.query.file); // expect: path-traversal
}

function load(req) {
  return serialize.unserialize(req.body.state); // expect: unsafe-deserialization
}

async function proxy(req) {
  return fetch(req.query.url); // expect: ssrf
}

function show(el, name) {
  el.innerHTML = "<b>" + name + "</b>"; // expect: xss
  document.write(name); // expect: xss
}

function digest(password) {
  return crypto.createHash("md5").update(password).digest("hex"); // expect: weak-crypto
}

function newToken() {
  const resetToken = Math.random().toString(36).slice(2); // expect: weak-crypto
  return resetToken;
}

function login(res, sid) {
  res.cookie("session", sid); // expect: insecure-cookie
}

function readReport(name) {
  const reportPath = "/srv/reports/" + name;
  return fs.readFileSync(reportPath, "utf8"); // expect: path-traversal
}

function listDir(name) {
  return require("child_process").execSync("ls " + name); // expect: command-injection
}
