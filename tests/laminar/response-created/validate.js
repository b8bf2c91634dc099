(data) => {
  if (!data.input.email) {
    return {
      "lam.response": {
        statusCode: 400,
        message: "Email is required",
        error: { code: "VALIDATION_ERROR", field: "email" },
      },
    };
  }
  return { validated: true };
};
