<?php

function find_user($conn, $name) {
    return mysqli_query($conn, "SELECT * FROM users WHERE name = '" . $name . "'"); // expect: injection
}

function remove_sessions($pdo, $user) {
    return $pdo->query("DELETE FROM sessions WHERE user = '$user'"); // expect: injection
}

function ping($host) {
    return shell_exec("ping -c 1 " . $host); // expect: command-injection
}

function read_file_of($name) {
    return file_get_contents("/srv/files/" . $name); // expect: path-traversal
}

function page() {
    include $_GET['page'] . ".php"; // expect: path-traversal
}

function load($state) {
    return unserialize($state); // expect: unsafe-deserialization
}

function fetch($url) {
    $ch = curl_init();
    curl_setopt($ch, CURLOPT_URL, $url); // expect: ssrf
    return curl_exec($ch);
}

function greet() {
    echo "Hello " . $_GET['name']; // expect: xss
}

function digest($password) {
    return md5($password); // expect: weak-crypto
}

function login($sid) {
    setcookie("session", $sid); // expect: insecure-cookie
}
