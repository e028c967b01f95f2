import java.io.File;
import java.io.FileInputStream;
import java.io.ObjectInputStream;
import java.net.URL;
import java.security.MessageDigest;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import javax.crypto.Cipher;
import javax.servlet.http.Cookie;
import javax.servlet.http.HttpServletRequest;
import javax.servlet.http.HttpServletResponse;

public class Vulnerable {
    ResultSet findUser(Connection conn, String name) throws Exception {
        Statement st = conn.createStatement();
        return st.executeQuery("SELECT * FROM users WHERE name = '" + name + "'"); // expect: injection
    }

    void ping(String host) throws Exception {
        Runtime.getRuntime().exec("ping -c 1 " + host); // expect: command-injection
    }

    FileInputStream read(HttpServletRequest req) throws Exception {
        return new FileInputStream(new File("/srv/files/" + req.getParameter("name"))); // expect: path-traversal
    }

    Object load(FileInputStream in) throws Exception {
        ObjectInputStream ois = new ObjectInputStream(in);
        return ois.readObject(); // expect: unsafe-deserialization
    }

    Object fetch(HttpServletRequest req) throws Exception {
        return new URL(req.getParameter("url")).openConnection(); // expect: ssrf
    }

    void show(HttpServletRequest req, HttpServletResponse resp) throws Exception {
        resp.getWriter().println("<p>Hello " + req.getParameter("name") + "</p>"); // expect: xss
    }

    byte[] digest(String password) throws Exception {
        return MessageDigest.getInstance("MD5").digest(password.getBytes()); // expect: weak-crypto
    }

    Cipher cipher() throws Exception {
        return Cipher.getInstance("DES/ECB/PKCS5Padding"); // expect: weak-crypto
    }

    void login(HttpServletResponse resp, String sid) {
        Cookie c = new Cookie("session", sid);
        c.setSecure(false); // expect: insecure-cookie
        resp.addCookie(c);
    }
}
