import java.io.File;
import java.io.FileInputStream;
import java.net.URL;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import javax.crypto.Cipher;
import javax.servlet.http.Cookie;
import javax.servlet.http.HttpServletRequest;
import javax.servlet.http.HttpServletResponse;

public class Safe {
    static final Path ROOT = Path.of("/srv/files").toAbsolutePath().normalize();

    ResultSet findUser(Connection conn, String name) throws Exception {
        PreparedStatement st = conn.prepareStatement("SELECT * FROM users WHERE name = ?");
        st.setString(1, name);
        return st.executeQuery();
    }

    void ping(String host) throws Exception {
        new ProcessBuilder("ping", "-c", "1", host).start();
    }

    FileInputStream read(HttpServletRequest req) throws Exception {
        Path p = ROOT.resolve(req.getParameter("name")).normalize();
        if (!p.startsWith(ROOT)) {
            throw new SecurityException("outside the root");
        }
        return new FileInputStream(p.toFile());
    }

    Object fetch() throws Exception {
        return new URL("https://api.example.com/items").openConnection();
    }

    void show(HttpServletRequest req, HttpServletResponse resp) throws Exception {
        resp.setContentType("text/plain");
        resp.getWriter().println("Hello");
    }

    byte[] digest(String password) throws Exception {
        return MessageDigest.getInstance("SHA-256").digest(password.getBytes());
    }

    Cipher cipher() throws Exception {
        return Cipher.getInstance("AES/GCM/NoPadding");
    }

    void login(HttpServletResponse resp, String sid) {
        Cookie c = new Cookie("session", sid);
        c.setSecure(true);
        c.setHttpOnly(true);
        resp.addCookie(c);
    }
}
