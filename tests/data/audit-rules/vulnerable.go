package app

import (
	"crypto/md5"
	"database/sql"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
)

func findUser(db *sql.DB, name string) (*sql.Rows, error) {
	return db.Query(fmt.Sprintf("SELECT * FROM users WHERE name = '%s'", name)) // expect: injection
}

func removeSessions(db *sql.DB, user string) error {
	_, err := db.Exec("DELETE FROM sessions WHERE user = '" + user + "'") // expect: injection
	return err
}

func ping(host string) error {
	return exec.Command("sh", "-c", "ping -c 1 "+host).Run() // expect: command-injection
}

func read(r *http.Request) ([]byte, error) {
	return os.ReadFile(filepath.Join("/srv/files", r.URL.Query().Get("name"))) // expect: path-traversal
}

func fetch(r *http.Request) (*http.Response, error) {
	return http.Get(r.URL.Query().Get("url")) // expect: ssrf
}

func show(name string) template.HTML {
	return template.HTML("<b>" + name + "</b>") // expect: xss
}

func digest(password string) [16]byte {
	return md5.Sum([]byte(password)) // expect: weak-crypto
}

func login(w http.ResponseWriter, sid string) {
	http.SetCookie(w, &http.Cookie{Name: "session", Value: sid}) // expect: insecure-cookie
}

func readReport(name string) ([]byte, error) {
	reportPath := "/srv/reports/" + name
	return os.ReadFile(reportPath) // expect: path-traversal
}
