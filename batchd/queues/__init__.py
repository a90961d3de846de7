"""Queue intake: requests and batches from RabbitMQ (AMQP 0-9-1) and Redis Streams (issue 19)."""
