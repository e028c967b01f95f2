package app

import (
	"crypto/sha256"
	"database/sql"
	"errors"
	"html/template"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const root = "/srv/files"

func findUser(db *sql.DB, name string) (*sql.Rows, error) {
	return db.Query("SELECT * FROM users WHERE name = $1", name)
}

func ping(host string) error {
	return exec.Command("ping", "-c", "1", host).Run()
}

func read(r *http.Request) ([]byte, error) {
	p, err := filepath.Abs(filepath.Clean(root + "/" + r.URL.Query().Get("name")))
	if err != nil || !strings.HasPrefix(p, root+"/") {
		return nil, errors.New("outside the root")
	}
	return os.ReadFile(p)
}

func fetch() (*http.Response, error) {
	return http.Get("https://api.example.com/items")
}

func show() template.HTML {
	return template.HTML("<b>hello</b>")
}

func digest(password string) [32]byte {
	return sha256.Sum256([]byte(password))
}

func login(w http.ResponseWriter, sid string) {
	http.SetCookie(w, &http.Cookie{Name: "session", Value: sid, Secure: true, HttpOnly: true})
}
