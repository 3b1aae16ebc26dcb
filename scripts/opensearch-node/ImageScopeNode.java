// One OpenSearch node in this JVM, through the codelibs OpenSearchRunner, with
// any settings we choose: every system property "imagescope.setting.<key>" is
// put into the node's settings as <key> (http.port, transport.port, node.name,
// discovery.seed_hosts, ...). The runner itself refuses HTTP ports above 9299
// and may move the port up when it is taken; here the port check is off and a
// taken port makes the node fail with the bind error on stderr and exit 1.
// Compiled by scripts/opensearch-node.sh with javac against the runner's jars.

import java.util.Properties;
import org.codelibs.opensearch.runner.OpenSearchRunner;

public final class ImageScopeNode {
    private static final String PREFIX = "imagescope.setting.";

    private ImageScopeNode() {}

    public static void main(String[] args) {
        Properties props = System.getProperties();
        OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1);
        runner.onBuild((index, settings) -> {
            for (String name : props.stringPropertyNames()) {
                if (name.startsWith(PREFIX)) {
                    String key = name.substring(PREFIX.length());
                    String value = props.getProperty(name);
                    if (key.endsWith("[]")) {
                        settings.putList(key.substring(0, key.length() - 2), value.split(","));
                    } else {
                        settings.put(key, value);
                    }
                }
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                System.err.println("imagescope-node: close failed: " + e);
            }
        }));
        try {
            runner.build(args);
        } catch (Throwable e) {
            System.err.println("imagescope-node: start-up failed: " + e);
            for (Throwable cause = e.getCause(); cause != null; cause = cause.getCause()) {
                System.err.println("imagescope-node:   caused by: " + cause);
            }
            Runtime.getRuntime().halt(1);
        }
        while (!runner.isClosed()) {
            try {
                Thread.sleep(5000);
            } catch (InterruptedException e) {
                return;
            }
        }
    }
}
