CREATE TABLE `balance_ledger` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`user_id` bigint unsigned NOT NULL,
	`type` enum('CHARGE','PAYMENT','REFUND') NOT NULL,
	`amount` bigint NOT NULL,
	`balance_after` bigint NOT NULL,
	`order_id` bigint unsigned,
	`created_at` datetime(3) NOT NULL,
	CONSTRAINT `balance_ledger_id` PRIMARY KEY(`id`)
);
--> statement-breakpoint
CREATE TABLE `balances` (
	`user_id` bigint unsigned NOT NULL,
	`balance` bigint NOT NULL DEFAULT 0,
	`created_at` datetime(3) NOT NULL,
	`updated_at` datetime(3) NOT NULL,
	CONSTRAINT `balances_user_id` PRIMARY KEY(`user_id`),
	CONSTRAINT `balances_non_negative` CHECK(`balances`.`balance` >= 0)
);
--> statement-breakpoint
CREATE TABLE `coupons` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`name` varchar(200) NOT NULL,
	`type` enum('FIXED','PERCENT') NOT NULL,
	`value` bigint NOT NULL,
	`min_order_amount` bigint NOT NULL DEFAULT 0,
	`total_quantity` int NOT NULL,
	`issued_quantity` int NOT NULL DEFAULT 0,
	`issue_starts_at` datetime(3),
	`issue_ends_at` datetime(3),
	`valid_days` int NOT NULL,
	`created_at` datetime(3) NOT NULL,
	CONSTRAINT `coupons_id` PRIMARY KEY(`id`),
	CONSTRAINT `coupons_not_over_issued` CHECK(`coupons`.`issued_quantity` <= `coupons`.`total_quantity`)
);
--> statement-breakpoint
CREATE TABLE `daily_product_sales` (
	`day` date NOT NULL,
	`product_id` bigint unsigned NOT NULL,
	`sold_quantity` int NOT NULL DEFAULT 0,
	`revenue` bigint NOT NULL DEFAULT 0,
	CONSTRAINT `daily_product_sales_day_product_id_pk` PRIMARY KEY(`day`,`product_id`)
);
--> statement-breakpoint
CREATE TABLE `idempotency_keys` (
	`user_id` bigint unsigned NOT NULL,
	`idempotency_key` varchar(255) NOT NULL,
	`method` varchar(8) NOT NULL,
	`path` varchar(255) NOT NULL,
	`request_hash` char(64) NOT NULL,
	`response_status` int NOT NULL,
	`response_body` mediumtext NOT NULL,
	`created_at` datetime(3) NOT NULL,
	CONSTRAINT `idempotency_keys_user_id_idempotency_key_pk` PRIMARY KEY(`user_id`,`idempotency_key`)
);
--> statement-breakpoint
CREATE TABLE `order_lines` (
	`order_id` bigint unsigned NOT NULL,
	`product_id` bigint unsigned NOT NULL,
	`name` varchar(200) NOT NULL,
	`unit_price` bigint NOT NULL,
	`quantity` int NOT NULL,
	`line_total` bigint NOT NULL,
	CONSTRAINT `order_lines_order_id_product_id_pk` PRIMARY KEY(`order_id`,`product_id`)
);
--> statement-breakpoint
CREATE TABLE `orders` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`user_id` bigint unsigned NOT NULL,
	`status` enum('PAID','CANCELLED') NOT NULL,
	`subtotal` bigint NOT NULL,
	`discount` bigint NOT NULL,
	`total` bigint NOT NULL,
	`user_coupon_id` bigint unsigned,
	`created_at` datetime(3) NOT NULL,
	`paid_at` datetime(3) NOT NULL,
	`cancelled_at` datetime(3),
	CONSTRAINT `orders_id` PRIMARY KEY(`id`)
);
--> statement-breakpoint
CREATE TABLE `outbox` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`event_id` char(36) NOT NULL,
	`type` varchar(64) NOT NULL,
	`aggregate_id` bigint unsigned NOT NULL,
	`payload` json NOT NULL,
	`attempts` int NOT NULL DEFAULT 0,
	`created_at` datetime(3) NOT NULL,
	`published_at` datetime(3),
	CONSTRAINT `outbox_id` PRIMARY KEY(`id`),
	CONSTRAINT `outbox_event_id_unique` UNIQUE(`event_id`)
);
--> statement-breakpoint
CREATE TABLE `processed_events` (
	`consumer` varchar(64) NOT NULL,
	`event_id` char(36) NOT NULL,
	`processed_at` datetime(3) NOT NULL,
	CONSTRAINT `processed_events_consumer_event_id_pk` PRIMARY KEY(`consumer`,`event_id`)
);
--> statement-breakpoint
CREATE TABLE `products` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`name` varchar(200) NOT NULL,
	`description` varchar(2000) NOT NULL DEFAULT '',
	`price` bigint NOT NULL,
	`stock` int NOT NULL,
	`initial_stock` int NOT NULL,
	`stock_adjustments` bigint NOT NULL DEFAULT 0,
	`created_at` datetime(3) NOT NULL,
	`updated_at` datetime(3) NOT NULL,
	CONSTRAINT `products_id` PRIMARY KEY(`id`),
	CONSTRAINT `products_stock_non_negative` CHECK(`products`.`stock` >= 0),
	CONSTRAINT `products_price_positive` CHECK(`products`.`price` > 0)
);
--> statement-breakpoint
CREATE TABLE `user_coupons` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`coupon_id` bigint unsigned NOT NULL,
	`user_id` bigint unsigned NOT NULL,
	`status` enum('AVAILABLE','USED') NOT NULL DEFAULT 'AVAILABLE',
	`issued_at` datetime(3) NOT NULL,
	`expires_at` datetime(3) NOT NULL,
	`used_at` datetime(3),
	`order_id` bigint unsigned,
	CONSTRAINT `user_coupons_id` PRIMARY KEY(`id`),
	CONSTRAINT `user_coupons_coupon_user` UNIQUE(`coupon_id`,`user_id`)
);
--> statement-breakpoint
CREATE INDEX `balance_ledger_user_id_id` ON `balance_ledger` (`user_id`,`id`);--> statement-breakpoint
CREATE INDEX `balance_ledger_order_id` ON `balance_ledger` (`order_id`);--> statement-breakpoint
CREATE INDEX `daily_product_sales_product` ON `daily_product_sales` (`product_id`);--> statement-breakpoint
CREATE INDEX `idempotency_keys_created_at` ON `idempotency_keys` (`created_at`);--> statement-breakpoint
CREATE INDEX `order_lines_product_id` ON `order_lines` (`product_id`);--> statement-breakpoint
CREATE INDEX `orders_user_id_id` ON `orders` (`user_id`,`id`);--> statement-breakpoint
CREATE INDEX `outbox_published_at_id` ON `outbox` (`published_at`,`id`);--> statement-breakpoint
CREATE INDEX `outbox_aggregate` ON `outbox` (`aggregate_id`,`type`);--> statement-breakpoint
CREATE INDEX `user_coupons_user_id_id` ON `user_coupons` (`user_id`,`id`);