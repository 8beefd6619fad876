// Prints, for each key read from stdin (one per line, UTF-8), the partition that the Java
// producer's default partitioner picks for it among N partitions (N is the only argument).
// Run with the Kafka client jars on the class path: java -cp "$NEARBY_KAFKA_LIBS/*" JavaPartition.java N
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

public class JavaPartition {
    public static void main(String[] args) throws Exception {
        int partitions = Integer.parseInt(args[0]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String key; (key = in.readLine()) != null; ) {
            byte[] bytes = key.getBytes(StandardCharsets.UTF_8);
            out.append(BuiltInPartitioner.partitionForKey(bytes, partitions)).append('\n');
        }
        System.out.print(out);
    }
}
