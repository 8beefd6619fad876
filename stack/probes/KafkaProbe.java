import java.time.Duration;
import java.util.Collection;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.Node;

/**
 * Readiness probe for the local Kafka broker: an AdminClient describeCluster + listTopics
 * (what a client needs from a broker before it can do anything else).
 *
 * Usage: KafkaProbe BOOTSTRAP TIMEOUT_SECONDS [PID]
 * Retries until the broker answers with at least one live broker or the timeout passes.
 * Exit codes: 0 ready, 1 timed out, 3 the process PID (the broker being waited for) exited,
 * 2 usage error. Runs on the class path of the Kafka lib folder (kafka-clients).
 */
public final class KafkaProbe {
    public static void main(String[] args) throws InterruptedException {
        if (args.length < 2) {
            System.err.println("usage: KafkaProbe BOOTSTRAP TIMEOUT_SECONDS [PID]");
            System.exit(2);
        }
        String bootstrap = args[0];
        long deadline = System.nanoTime() + (long) (Double.parseDouble(args[1]) * 1e9);
        long pid = args.length > 2 ? Long.parseLong(args[2]) : -1;

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "nearby-stack-probe");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "4000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "100");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "1000");

        int code;
        String last = "no attempt made";
        Admin admin = Admin.create(props);
        while (true) {
            try {
                DescribeClusterResult cluster = admin.describeCluster();
                String clusterId = cluster.clusterId().get(5, TimeUnit.SECONDS);
                Collection<Node> nodes = cluster.nodes().get(5, TimeUnit.SECONDS);
                Set<String> topics = admin.listTopics().names().get(5, TimeUnit.SECONDS);
                if (!nodes.isEmpty()) {
                    System.out.printf("cluster %s, %d broker(s), %d topic(s)%n",
                            clusterId, nodes.size(), topics.size());
                    code = 0;
                    break;
                }
                last = "cluster reports no live broker yet";
            } catch (ExecutionException e) {
                last = String.valueOf(e.getCause());
            } catch (Exception e) {
                last = e.toString();
            }
            if (pid > 0 && !alive(pid)) {
                System.err.println("process " + pid + " exited; last Kafka error: " + last);
                code = 3;
                break;
            }
            if (System.nanoTime() > deadline) {
                System.err.println("timed out; last Kafka error: " + last);
                code = 1;
                break;
            }
            Thread.sleep(500);
        }
        admin.close(Duration.ofSeconds(1));
        System.exit(code);
    }

    /** True while the process exists and is not a zombie (a dead daemon nobody has reaped). */
    static boolean alive(long pid) {
        if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
            return false;
        }
        try {
            String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/" + pid + "/stat"));
            return stat.charAt(stat.lastIndexOf(')') + 2) != 'Z';
        } catch (java.io.IOException | RuntimeException e) {
            return true; // no procfs: trust ProcessHandle
        }
    }
}
