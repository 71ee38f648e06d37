"""Operations on bricks (paper §3): routing/retrieval, combination, updating and growing."""
