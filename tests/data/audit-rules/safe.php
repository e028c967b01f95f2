<?php

const ROOT = "/srv/files";

function find_user($pdo, $name) {
    $st = $pdo->prepare("SELECT * FROM users WHERE name = ?");
    $st->execute([$name]);
    return $st->fetchAll();
}

function ping($host) {
    return shell_exec("ping -c 1 " . escapeshellarg($host));
}

function read_file_of($name) {
    $path = realpath(ROOT . "/" . basename($name));
    if ($path === false || strpos($path, ROOT . "/") !== 0) {
        throw new Exception("outside the root");
    }
    return file_get_contents($path);
}

function page() {
    include "pages/home.php";
}

function load($state) {
    return json_decode($state, true);
}

function fetch() {
    $ch = curl_init();
    curl_setopt($ch, CURLOPT_URL, "https://api.example.com/items");
    return curl_exec($ch);
}

function greet() {
    echo "Hello " . htmlspecialchars($_GET['name'], ENT_QUOTES);
}

function digest($password) {
    return password_hash($password, PASSWORD_DEFAULT);
}

function login($sid) {
    setcookie("session", $sid, ["secure" => true, "httponly" => true, "samesite" => "Lax"]);
}
