//! Vulnerable and safe twins for `scout bench audit`, per CWE and language.
//! A safe twin differs from its vulnerable one only by the fix: bound
//! parameters, an argument list instead of a shell, a normalised path
//! checked against its root. Some vulnerable forms are ones the shipped
//! structural rules do not match (a path built in a helper function): the
//! bench must be able to show what rules alone miss.
//!
//! Placeholders: `@F@` a function name, `@A@` an argument, `@V@` a local,
//! `@T@` a table, `@C@` a class (Java), `@P@` a package (Go).

use crate::tasks::audit::rules::Lang;

/// One twin pair.
pub struct Template {
    /// The security pipeline's rule a finding must name.
    pub rule: &'static str,
    pub cwe: &'static str,
    pub lang: Lang,
    /// What this form is, for the report.
    pub form: &'static str,
    pub vulnerable: &'static str,
    pub safe: &'static str,
}

const SQL: (&str, &str) = ("injection", "CWE-89");
const CMD: (&str, &str) = ("command-injection", "CWE-78");
const PATH: (&str, &str) = ("path-traversal", "CWE-22");

const fn t(
    kind: (&'static str, &'static str),
    lang: Lang,
    form: &'static str,
    vulnerable: &'static str,
    safe: &'static str,
) -> Template {
    Template {
        rule: kind.0,
        cwe: kind.1,
        lang,
        form,
        vulnerable,
        safe,
    }
}

pub const TEMPLATES: &[Template] = &[
    // Python
    t(
        SQL,
        Lang::Python,
        "% formatting in execute",
        "import sqlite3\n\n\ndef @F@(conn: sqlite3.Connection, @A@: str):\n    cur = conn.cursor()\n    cur.execute(\"SELECT id, email FROM @T@ WHERE name = '%s'\" % @A@)\n    return cur.fetchall()\n",
        "import sqlite3\n\n\ndef @F@(conn: sqlite3.Connection, @A@: str):\n    cur = conn.cursor()\n    cur.execute(\"SELECT id, email FROM @T@ WHERE name = ?\", (@A@,))\n    return cur.fetchall()\n",
    ),
    t(
        SQL,
        Lang::Python,
        "f-string query in a variable",
        "def @F@(conn, @A@):\n    @V@ = f\"DELETE FROM @T@ WHERE owner = '{@A@}'\"\n    conn.execute(@V@)\n    conn.commit()\n",
        "def @F@(conn, @A@):\n    @V@ = \"DELETE FROM @T@ WHERE owner = ?\"\n    conn.execute(@V@, (@A@,))\n    conn.commit()\n",
    ),
    t(
        CMD,
        Lang::Python,
        "os.system with concatenation",
        "import os\nimport subprocess\n\n\ndef @F@(@A@):\n    return os.system(\"tar xzf \" + @A@)\n",
        "import os\nimport subprocess\n\n\ndef @F@(@A@):\n    return subprocess.run([\"tar\", \"xzf\", @A@], check=True).returncode\n",
    ),
    t(
        CMD,
        Lang::Python,
        "shell=True on a formatted command",
        "import subprocess\n\n\ndef @F@(@A@):\n    @V@ = \"convert %s thumbnail.png\" % @A@\n    return subprocess.call(@V@, shell=True)\n",
        "import subprocess\n\n\ndef @F@(@A@):\n    @V@ = [\"convert\", @A@, \"thumbnail.png\"]\n    return subprocess.call(@V@)\n",
    ),
    t(
        PATH,
        Lang::Python,
        "open of os.path.join",
        "import os\n\nUPLOADS = \"/srv/uploads\"\n\n\ndef @F@(@A@):\n    with open(os.path.join(UPLOADS, @A@), \"rb\") as f:\n        return f.read()\n",
        "import os\n\nUPLOADS = os.path.realpath(\"/srv/uploads\")\n\n\ndef @F@(@A@):\n    @V@ = os.path.realpath(os.path.join(UPLOADS, @A@))\n    if not @V@.startswith(UPLOADS + os.sep):\n        raise ValueError(\"outside the uploads folder\")\n    with open(@V@, \"rb\") as f:\n        return f.read()\n",
    ),
    t(
        PATH,
        Lang::Python,
        "path built into a variable first",
        "import os\n\nUPLOADS = \"/srv/uploads\"\n\n\ndef @F@(@A@):\n    @V@ = UPLOADS + \"/\" + @A@\n    with open(@V@) as f:\n        return f.read()\n",
        "import os\n\nUPLOADS = os.path.realpath(\"/srv/uploads\")\n\n\ndef @F@(@A@):\n    @V@ = os.path.realpath(UPLOADS + \"/\" + @A@)\n    if not @V@.startswith(UPLOADS + os.sep):\n        raise ValueError(\"outside the uploads folder\")\n    with open(@V@) as f:\n        return f.read()\n",
    ),
    t(
        PATH,
        Lang::Python,
        "path built in a helper function",
        "import os\n\nUPLOADS = \"/srv/uploads\"\n\n\ndef _@F@_path(@A@):\n    return UPLOADS + \"/\" + @A@\n\n\ndef @F@(@A@):\n    with open(_@F@_path(@A@)) as f:\n        return f.read()\n",
        "import os\n\nUPLOADS = os.path.realpath(\"/srv/uploads\")\n\n\ndef _@F@_path(@A@):\n    @V@ = os.path.realpath(UPLOADS + \"/\" + @A@)\n    if not @V@.startswith(UPLOADS + os.sep):\n        raise ValueError(\"outside the uploads folder\")\n    return @V@\n\n\ndef @F@(@A@):\n    with open(_@F@_path(@A@)) as f:\n        return f.read()\n",
    ),
    // JavaScript
    t(
        SQL,
        Lang::JavaScript,
        "concatenation in query",
        "function @F@(db, @A@, done) {\n  db.query(\"SELECT id, email FROM @T@ WHERE id = \" + @A@, done);\n}\n\nmodule.exports = { @F@ };\n",
        "function @F@(db, @A@, done) {\n  db.query(\"SELECT id, email FROM @T@ WHERE id = ?\", [@A@], done);\n}\n\nmodule.exports = { @F@ };\n",
    ),
    t(
        SQL,
        Lang::JavaScript,
        "template literal query",
        "async function @F@(pool, @A@) {\n  const @V@ = `UPDATE @T@ SET seen = 1 WHERE owner = '${@A@}'`;\n  return pool.query(@V@);\n}\n\nmodule.exports = { @F@ };\n",
        "async function @F@(pool, @A@) {\n  const @V@ = \"UPDATE @T@ SET seen = 1 WHERE owner = $1\";\n  return pool.query(@V@, [@A@]);\n}\n\nmodule.exports = { @F@ };\n",
    ),
    t(
        CMD,
        Lang::JavaScript,
        "exec with concatenation",
        "const { exec, execFile } = require(\"child_process\");\n\nfunction @F@(@A@, done) {\n  exec(\"git log --oneline \" + @A@, done);\n}\n\nmodule.exports = { @F@ };\n",
        "const { exec, execFile } = require(\"child_process\");\n\nfunction @F@(@A@, done) {\n  execFile(\"git\", [\"log\", \"--oneline\", @A@], done);\n}\n\nmodule.exports = { @F@ };\n",
    ),
    t(
        PATH,
        Lang::JavaScript,
        "readFileSync of path.join with request input",
        "const fs = require(\"fs\");\nconst path = require(\"path\");\n\nconst ROOT = path.resolve(\"/srv/files\");\n\nfunction @F@(req) {\n  return fs.readFileSync(path.join(ROOT, req.query.@A@));\n}\n\nmodule.exports = { @F@ };\n",
        "const fs = require(\"fs\");\nconst path = require(\"path\");\n\nconst ROOT = path.resolve(\"/srv/files\");\n\nfunction @F@(req) {\n  const @V@ = path.resolve(ROOT, req.query.@A@);\n  if (!@V@.startsWith(ROOT + path.sep)) throw new Error(\"outside the root\");\n  return fs.readFileSync(@V@);\n}\n\nmodule.exports = { @F@ };\n",
    ),
    t(
        PATH,
        Lang::JavaScript,
        "path built into a variable first",
        "const fs = require(\"fs\");\n\nconst ROOT = \"/srv/files\";\n\nfunction @F@(@A@) {\n  const @V@ = ROOT + \"/\" + @A@;\n  return fs.readFileSync(@V@, \"utf8\");\n}\n\nmodule.exports = { @F@ };\n",
        "const fs = require(\"fs\");\nconst path = require(\"path\");\n\nconst ROOT = path.resolve(\"/srv/files\");\n\nfunction @F@(@A@) {\n  const @V@ = path.resolve(ROOT, @A@);\n  if (!@V@.startsWith(ROOT + path.sep)) throw new Error(\"outside the root\");\n  return fs.readFileSync(@V@, \"utf8\");\n}\n\nmodule.exports = { @F@ };\n",
    ),
    t(
        CMD,
        Lang::JavaScript,
        "execSync of a template",
        "const { execSync, execFileSync } = require(\"child_process\");\n\nfunction @F@(@A@) {\n  return execSync(`ping -c 1 ${@A@}`).toString();\n}\n\nmodule.exports = { @F@ };\n",
        "const { execSync, execFileSync } = require(\"child_process\");\n\nfunction @F@(@A@) {\n  return execFileSync(\"ping\", [\"-c\", \"1\", @A@]).toString();\n}\n\nmodule.exports = { @F@ };\n",
    ),
    // Java
    t(
        SQL,
        Lang::Java,
        "concatenation in executeQuery",
        "import java.sql.Connection;\nimport java.sql.ResultSet;\n\npublic class @C@ {\n    public ResultSet @F@(Connection conn, String @A@) throws Exception {\n        return conn.createStatement().executeQuery(\"SELECT id FROM @T@ WHERE name = '\" + @A@ + \"'\");\n    }\n}\n",
        "import java.sql.Connection;\nimport java.sql.PreparedStatement;\nimport java.sql.ResultSet;\n\npublic class @C@ {\n    public ResultSet @F@(Connection conn, String @A@) throws Exception {\n        PreparedStatement st = conn.prepareStatement(\"SELECT id FROM @T@ WHERE name = ?\");\n        st.setString(1, @A@);\n        return st.executeQuery();\n    }\n}\n",
    ),
    t(
        CMD,
        Lang::Java,
        "Runtime.exec with concatenation",
        "public class @C@ {\n    public Process @F@(String @A@) throws Exception {\n        return Runtime.getRuntime().exec(\"nslookup \" + @A@);\n    }\n}\n",
        "public class @C@ {\n    public Process @F@(String @A@) throws Exception {\n        return new ProcessBuilder(\"nslookup\", @A@).start();\n    }\n}\n",
    ),
    t(
        PATH,
        Lang::Java,
        "File from concatenation",
        "import java.io.File;\nimport java.io.FileInputStream;\n\npublic class @C@ {\n    public FileInputStream @F@(String @A@) throws Exception {\n        return new FileInputStream(new File(\"/srv/files/\" + @A@));\n    }\n}\n",
        "import java.io.FileInputStream;\nimport java.nio.file.Path;\n\npublic class @C@ {\n    static final Path ROOT = Path.of(\"/srv/files\").toAbsolutePath().normalize();\n\n    public FileInputStream @F@(String @A@) throws Exception {\n        Path @V@ = ROOT.resolve(@A@).normalize();\n        if (!@V@.startsWith(ROOT)) {\n            throw new SecurityException(\"outside the root\");\n        }\n        return new FileInputStream(@V@.toFile());\n    }\n}\n",
    ),
    // Go
    t(
        SQL,
        Lang::Go,
        "Sprintf query",
        "package @P@\n\nimport (\n\t\"database/sql\"\n\t\"fmt\"\n)\n\nfunc @F@(db *sql.DB, @A@ string) (*sql.Rows, error) {\n\treturn db.Query(fmt.Sprintf(\"SELECT id FROM @T@ WHERE name = '%s'\", @A@))\n}\n",
        "package @P@\n\nimport (\n\t\"database/sql\"\n)\n\nfunc @F@(db *sql.DB, @A@ string) (*sql.Rows, error) {\n\treturn db.Query(\"SELECT id FROM @T@ WHERE name = $1\", @A@)\n}\n",
    ),
    t(
        CMD,
        Lang::Go,
        "sh -c with concatenation",
        "package @P@\n\nimport \"os/exec\"\n\nfunc @F@(@A@ string) error {\n\treturn exec.Command(\"sh\", \"-c\", \"ping -c 1 \"+@A@).Run()\n}\n",
        "package @P@\n\nimport \"os/exec\"\n\nfunc @F@(@A@ string) error {\n\treturn exec.Command(\"ping\", \"-c\", \"1\", @A@).Run()\n}\n",
    ),
    t(
        PATH,
        Lang::Go,
        "ReadFile of a joined path",
        "package @P@\n\nimport (\n\t\"net/http\"\n\t\"os\"\n\t\"path/filepath\"\n)\n\nfunc @F@(r *http.Request) ([]byte, error) {\n\treturn os.ReadFile(filepath.Join(\"/srv/files\", r.URL.Query().Get(\"@A@\")))\n}\n",
        "package @P@\n\nimport (\n\t\"errors\"\n\t\"net/http\"\n\t\"os\"\n\t\"path/filepath\"\n\t\"strings\"\n)\n\nfunc @F@(r *http.Request) ([]byte, error) {\n\t@V@ := filepath.Clean(\"/srv/files/\" + r.URL.Query().Get(\"@A@\"))\n\tif !strings.HasPrefix(@V@, \"/srv/files/\") {\n\t\treturn nil, errors.New(\"outside the root\")\n\t}\n\treturn os.ReadFile(@V@)\n}\n",
    ),
    t(
        PATH,
        Lang::Go,
        "path built into a variable first",
        "package @P@\n\nimport \"os\"\n\nfunc @F@(@A@ string) ([]byte, error) {\n\t@V@ := \"/srv/files/\" + @A@\n\treturn os.ReadFile(@V@)\n}\n",
        "package @P@\n\nimport (\n\t\"errors\"\n\t\"os\"\n\t\"path/filepath\"\n\t\"strings\"\n)\n\nfunc @F@(@A@ string) ([]byte, error) {\n\t@V@ := filepath.Clean(\"/srv/files/\" + @A@)\n\tif !strings.HasPrefix(@V@, \"/srv/files/\") {\n\t\treturn nil, errors.New(\"outside the root\")\n\t}\n\treturn os.ReadFile(@V@)\n}\n",
    ),
    t(
        SQL,
        Lang::Go,
        "concatenation in Exec",
        "package @P@\n\nimport \"database/sql\"\n\nfunc @F@(db *sql.DB, @A@ string) error {\n\t_, err := db.Exec(\"DELETE FROM @T@ WHERE owner = '\" + @A@ + \"'\")\n\treturn err\n}\n",
        "package @P@\n\nimport \"database/sql\"\n\nfunc @F@(db *sql.DB, @A@ string) error {\n\t_, err := db.Exec(\"DELETE FROM @T@ WHERE owner = $1\", @A@)\n\treturn err\n}\n",
    ),
    // PHP
    t(
        SQL,
        Lang::Php,
        "concatenation in mysqli_query",
        "<?php\n\nfunction @F@($conn, $@A@) {\n    return mysqli_query($conn, \"SELECT id FROM @T@ WHERE name = '\" . $@A@ . \"'\");\n}\n",
        "<?php\n\nfunction @F@($conn, $@A@) {\n    $st = mysqli_prepare($conn, \"SELECT id FROM @T@ WHERE name = ?\");\n    mysqli_stmt_bind_param($st, \"s\", $@A@);\n    mysqli_stmt_execute($st);\n    return mysqli_stmt_get_result($st);\n}\n",
    ),
    t(
        CMD,
        Lang::Php,
        "system with concatenation",
        "<?php\n\nfunction @F@($@A@) {\n    return system(\"ping -c 1 \" . $@A@);\n}\n",
        "<?php\n\nfunction @F@($@A@) {\n    return system(\"ping -c 1 \" . escapeshellarg($@A@));\n}\n",
    ),
    t(
        PATH,
        Lang::Php,
        "file_get_contents of concatenation",
        "<?php\n\nfunction @F@($@A@) {\n    return file_get_contents(\"/srv/files/\" . $@A@);\n}\n",
        "<?php\n\nfunction @F@($@A@) {\n    $@V@ = realpath(\"/srv/files/\" . $@A@);\n    if ($@V@ === false || strpos($@V@, \"/srv/files/\") !== 0) {\n        throw new Exception(\"outside the root\");\n    }\n    return file_get_contents($@V@);\n}\n",
    ),
    // Ruby
    t(
        SQL,
        Lang::Ruby,
        "interpolation in where",
        "class @C@\n  def @F@(@A@)\n    User.where(\"name = '#{@A@}'\").to_a\n  end\nend\n",
        "class @C@\n  def @F@(@A@)\n    User.where(\"name = ?\", @A@).to_a\n  end\nend\n",
    ),
    t(
        CMD,
        Lang::Ruby,
        "system with interpolation",
        "class @C@\n  def @F@(@A@)\n    system(\"ping -c 1 #{@A@}\")\n  end\nend\n",
        "class @C@\n  def @F@(@A@)\n    system(\"ping\", \"-c\", \"1\", @A@)\n  end\nend\n",
    ),
    t(
        PATH,
        Lang::Ruby,
        "File.read of interpolation",
        "class @C@\n  def @F@(@A@)\n    File.read(\"/srv/files/#{@A@}\")\n  end\nend\n",
        "class @C@\n  ROOT = \"/srv/files\"\n\n  def @F@(@A@)\n    @V@ = File.expand_path(@A@, ROOT)\n    raise ArgumentError, \"outside the root\" unless @V@.start_with?(ROOT + \"/\")\n    File.read(@V@)\n  end\nend\n",
    ),
    // C
    t(
        CMD,
        Lang::C,
        "system of a formatted command",
        "#include <stdio.h>\n#include <stdlib.h>\n\nint @F@(const char *@A@) {\n    char cmd[512];\n    snprintf(cmd, sizeof cmd, \"ping -c 1 %s\", @A@);\n    return system(cmd);\n}\n",
        "#include <stdio.h>\n#include <unistd.h>\n\nint @F@(const char *@A@) {\n    return execlp(\"ping\", \"ping\", \"-c\", \"1\", @A@, (char *)NULL);\n}\n",
    ),
    // Rust
    t(
        CMD,
        Lang::Rust,
        "sh -c with format!",
        "use std::process::{Command, ExitStatus};\n\npub fn @F@(@A@: &str) -> std::io::Result<ExitStatus> {\n    Command::new(\"sh\").arg(\"-c\").arg(format!(\"ping -c 1 {}\", @A@)).status()\n}\n",
        "use std::process::{Command, ExitStatus};\n\npub fn @F@(@A@: &str) -> std::io::Result<ExitStatus> {\n    Command::new(\"ping\").args([\"-c\", \"1\", @A@]).status()\n}\n",
    ),
    t(
        PATH,
        Lang::Rust,
        "read_to_string of format!",
        "use std::fs;\n\npub fn @F@(@A@: &str) -> std::io::Result<String> {\n    fs::read_to_string(format!(\"/srv/files/{}\", @A@))\n}\n",
        "use std::fs;\nuse std::path::Path;\n\npub fn @F@(@A@: &str) -> std::io::Result<String> {\n    let root = Path::new(\"/srv/files\");\n    let @V@ = root.join(@A@).canonicalize()?;\n    if !@V@.starts_with(root) {\n        return Err(std::io::Error::other(\"outside the root\"));\n    }\n    fs::read_to_string(@V@)\n}\n",
    ),
];
